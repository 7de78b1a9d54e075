from django.db import models


class Person(models.Model):
    """The seed's example: a name and an address to share, and a secret that is never sent."""

    name = models.CharField(max_length=200)
    address = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return self.name
