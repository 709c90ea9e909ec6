"""Webhooks: endpoint policy (URL, SSRF, CA trust), signing, fan-out and delivery (issue 7)."""
