"""The optimizer API shared by every ASGD implementation: behaviour, validation, properties and their mutation meta-test."""
