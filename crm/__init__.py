"""CRM connectors, one sub-package each, implementing core.crm.port.CrmConnector."""
