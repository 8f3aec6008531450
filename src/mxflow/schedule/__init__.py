"""mxflow.schedule"""
