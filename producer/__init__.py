"""durian's Django app: hooks on models, listeners, publishing events on commit.

The only package of durian that imports Django.
"""
