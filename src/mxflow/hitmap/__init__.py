"""mxflow.hitmap"""
