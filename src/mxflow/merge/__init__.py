"""mxflow.merge"""
