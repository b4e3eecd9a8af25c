"""tickline.journal"""
