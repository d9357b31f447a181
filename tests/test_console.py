from mlff.console import plain_console


def test_plain_console_prints_text_as_given():
    console = plain_console(record=True, width=200)
    console.print("cu.xyz:-1: [bold]x[/bold] [1, 2] :smile:")
    assert console.export_text().strip() == "cu.xyz:-1: [bold]x[/bold] [1, 2] :smile:"
