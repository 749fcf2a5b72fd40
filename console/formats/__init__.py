"""Per-language display formats layered over Django's own (`FORMAT_MODULE_PATH`): a name set
here wins, every other name falls through to Django's locale module.

Both languages group digits by three with a comma, as Chinese finance and the BigModel
console do (Django's zh_Hans groups by four with no separator, so `intcomma` printed
1234567 ungrouped); dates follow each language's own order and words.
"""
