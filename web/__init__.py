"""The HTTP surface (Falcon): storefront proxy, webhooks, embedded admin, auth, health."""
