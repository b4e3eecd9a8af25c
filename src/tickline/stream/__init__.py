"""tickline.stream"""
