"""MatoKit: operate Matomo from the shell, cron jobs and CI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
