"""Shared fixtures for every test package."""

from __future__ import annotations
