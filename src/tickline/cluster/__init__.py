"""tickline.cluster"""
