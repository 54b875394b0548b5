"""Dynamics 365 / Dataverse Web API connector (the only MSAL importer)."""
