"""The HTTPS API front: thin handlers over the services."""
