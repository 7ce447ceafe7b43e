"""One file per method. Each defines exactly one :class:`~adapterspec.adapter.Adapter` subclass; the registry finds
it by scanning this package, so adding a method never means editing a central list."""
