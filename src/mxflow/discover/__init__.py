"""mxflow.discover"""
