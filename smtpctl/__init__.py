"""smtpctl: administer SMTP sending credentials and metered usage."""

__version__ = "0.1.0"
