"""One file per method. Each defines exactly one `Adapter` subclass; the registry finds
it by scanning this package, so adding a method never means editing a central list."""
