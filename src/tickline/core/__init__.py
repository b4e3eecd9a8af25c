"""tickline.core"""
