"""Drivers under test. Each turns the same operations into real calls on a real mount.

A driver implements :class:`adapters.base.Driver`; :mod:`adapters.registry` finds drivers by
name, built in or registered by a third party through the ``unionspec.drivers`` entry point.
"""
