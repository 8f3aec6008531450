"""mxflow.engine"""
