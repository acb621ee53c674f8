"""The command line: thin typer commands that parse, call the core, and render.

The entry point and the root command are in ``smtpctl.cli.typer_app``; each
group or command lives in its own module here and is imported only when it
runs. ``smtpctl.cli.output`` renders results and words core errors.
"""
