"""mxflow.catalog"""
