from smtpctl.cli.typer_app import main

if __name__ == "__main__":
    main()
