"""tickline.gateway"""
