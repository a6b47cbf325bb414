from suggest.cli import app

app()
