"""Front ends that use the store live: the SMTP submission server and the
Postfix policy service. They call ``smtpctl.core`` like the CLI does."""
