"""Session state (ASP.NET SessionStateModule): per-user data kept between requests."""
