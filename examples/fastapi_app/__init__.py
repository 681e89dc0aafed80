"""A FastAPI backend over SmartConnect (``app.py``; see the README beside it)."""
