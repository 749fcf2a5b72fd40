# Dates keep Django's zh_Hans forms (2026年11月23日 14:05); numbers are grouped by three with
# a comma, as amounts are written in Chinese finance (¥1,234,567.00), not Django's ungrouped
# default.
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
MONTH_DAY_FORMAT = "n月j日"
