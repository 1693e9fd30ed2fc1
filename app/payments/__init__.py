"""The payments core: the only code that changes orders, payments, refunds and disputes.

Doors (pages, API, webhooks, dashboard, jobs) call the functions re-exported here.
"""
