"""mxflow.process"""
