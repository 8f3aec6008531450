"""mxflow.simulate"""
