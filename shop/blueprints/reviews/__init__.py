"""Product reviews: write one (buyers only, once), read a product's approved reviews."""
