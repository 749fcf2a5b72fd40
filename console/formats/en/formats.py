# A console reads in tables: a 24-hour clock and abbreviated months keep columns short
# ("Nov 23, 2026 14:05" rather than Django's "Nov. 23, 2026, 2:05 p.m.").
DATE_FORMAT = "M j, Y"
DATETIME_FORMAT = "M j, Y H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "M j"
TIME_FORMAT = "H:i"
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
