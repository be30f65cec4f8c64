"""splitface.servers"""
