"""The chapters' data sets, generated or shipped inside a package (nothing is downloaded)."""
