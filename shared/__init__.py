"""splitface.shared"""
