"""The root of Dark Tower's exception hierarchy; each layer derives its own family from it."""


class DarkTowerError(Exception):
    """Base of every error Dark Tower raises on purpose."""
