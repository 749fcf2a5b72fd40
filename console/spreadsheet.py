"""CSV downloads open in spreadsheets, which run a cell that starts like a formula.

Every CSV writer of the console (transactions, statements, usage, the prompt-history export,
the staff's finance exports) passes the text people or models wrote (project names, labels,
prompts, responses, references) through `csv_cell`. Numbers, dates and amounts the console
formats itself go out as they are: a negative amount must stay a number.
"""

# What OWASP lists as the start of a formula: =, +, - and @, and tab and carriage return
# (a spreadsheet may drop them and read the formula behind).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """`value` kept as text when a spreadsheet would read it as a formula: a leading
    apostrophe, which spreadsheets show as nothing but take as "this is text"."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
