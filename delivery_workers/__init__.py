"""durian's delivery workers: consume delivery jobs and POST them, signed, with httpx.

Imports no Django.
"""
