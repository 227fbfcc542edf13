"""imageguard: gate an Apache image directory with an application's own logins."""

__version__ = "0.1.0"
