"""mxflow.cluster"""
