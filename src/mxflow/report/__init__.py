"""mxflow.report"""
