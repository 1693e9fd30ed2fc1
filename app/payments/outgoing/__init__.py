"""Outgoing webhooks: the merchant's endpoints, signed deliveries, retries, the log.

signing.py signs as the Standard Webhooks specification says; secrets.py is the one
accessor of the endpoints' signing secrets; schedule.py is the retry schedule; http.py
sends with the SSRF guard; delivery.py claims, sends and records deliveries (jobs);
endpoints.py is what the dashboard and the API do to endpoints and deliveries.
"""
