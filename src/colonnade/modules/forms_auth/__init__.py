"""Forms authentication: ASP.NET's login page and encrypted ticket cookie, for all content."""
