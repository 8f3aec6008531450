"""mxflow.stats"""
