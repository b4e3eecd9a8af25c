"""Tests of the network gateways."""
