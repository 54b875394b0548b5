"""Teams app manifest: template, generated icons and the package builder (`kebiao manifest build`)."""
