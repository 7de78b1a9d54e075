"""durian's Faust stream processor: joins events with the listener table and emits delivery jobs.

Imports no Django.
"""
