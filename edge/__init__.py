"""splitface.edge"""
