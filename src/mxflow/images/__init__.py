"""mxflow.images"""
