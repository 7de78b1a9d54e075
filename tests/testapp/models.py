from __future__ import annotations

import uuid

from django.db import models


class Person(models.Model):
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=200, blank=True)
    born = models.DateField(null=True, blank=True)
    balance = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    token = models.UUIDField(default=uuid.uuid4)
    avatar = models.FileField(blank=True)
    friend = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    updated = models.DateTimeField(auto_now=True)
